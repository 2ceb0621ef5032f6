"""ctxsim.members"""
