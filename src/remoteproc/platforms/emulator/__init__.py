"""platforms/emulator"""
