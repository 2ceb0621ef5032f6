"""ctxsim.contexts"""
