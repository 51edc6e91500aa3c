"""Using a trained model: evaluate it, extract features of any images, search a gallery, draw what it
looks at, and export it to ONNX (``python main.py --mode evaluate|extract|search|explain|export``)."""
