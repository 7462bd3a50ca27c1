"""espnet_ext.analysis"""
