"""espnet_ext.lid"""
