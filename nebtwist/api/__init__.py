"""nebtwist.api"""
