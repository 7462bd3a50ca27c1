"""espnet_ext.scoring"""
