"""continual"""
