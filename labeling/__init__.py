"""ctxsim.labeling"""
