"""espnet_ext.routing"""
