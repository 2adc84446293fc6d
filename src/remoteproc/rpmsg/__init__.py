"""rpmsg"""
