"""espnet_ext.bin"""
