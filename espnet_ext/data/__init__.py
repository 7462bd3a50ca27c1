"""espnet_ext.data"""
