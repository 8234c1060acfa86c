"""Separating a picture's foreground from its background (the weights-free remover is `classic`)."""
