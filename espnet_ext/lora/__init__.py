"""espnet_ext.lora"""
