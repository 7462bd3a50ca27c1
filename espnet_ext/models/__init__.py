"""espnet_ext.models"""
