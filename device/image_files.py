"""Which files are images: the one suffix list for capture folders/globs, YOLO image folders and calibration sets."""

# Lower-case suffixes of the still-image formats OpenCV decodes; compare with `path.suffix.lower()`.
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")
