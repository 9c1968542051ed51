"""nebtwist.core"""
