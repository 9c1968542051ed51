"""nebtwist.cli"""
