"""espnet_ext.decode"""
