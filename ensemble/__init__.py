"""ctxsim.ensemble"""
