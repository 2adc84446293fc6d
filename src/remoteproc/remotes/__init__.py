"""remotes"""
