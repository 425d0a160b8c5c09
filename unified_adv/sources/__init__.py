"""Where models and data come from.

``models`` (the wrapper every backend calls, loaders of a user's model files; the bottom of
this package), ``lines`` (Kügler's synthetic line images), ``builtin/`` (the builtin digits
nets and data split, the line CNN, the digits autoencoder, and their shipped weights),
``ondisk`` (CIFAR-10/100 and MNIST files as published), ``libraries`` (torchvision and timm
architectures, ONNX files through onnx2torch), ``data`` (the scenario's samples) and ``load``
(the scenario's model, builtin or a user's).
"""
