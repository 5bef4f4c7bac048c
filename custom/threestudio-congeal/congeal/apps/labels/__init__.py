"""Label once, propagate to every photo.

Modules:
    label_file      the label file users write (`congeal-labels-v1`), validated
    propagation     labels of some photos -> every photo, with visibility and confidence (JSON document)
    coco            the propagated labels as a COCO-keypoints document
    label_pictures  the propagated labels drawn on every photo, as a grid
"""
