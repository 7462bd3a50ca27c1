"""espnet_ext.train"""
