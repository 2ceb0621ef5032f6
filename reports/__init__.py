"""ctxsim.reports"""
