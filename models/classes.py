"""The segmentation classes shared by the model, the renderer and the assistant.

Index 0 is background. Colours (BGR) are from the Okabe-Ito colour-blind-safe palette.
"""

CLASSES = ("background", "nerve", "vessel", "fascia", "pec_major", "pec_minor",
           "serratus", "bone", "pleura", "needle")
CLASS_INDEX = {name: i for i, name in enumerate(CLASSES)}

# BGR
COLOURS_BGR = {
    "nerve": (66, 228, 240),       # yellow
    "vessel": (0, 94, 213),        # vermillion
    "fascia": (233, 180, 86),      # sky blue
    "pec_major": (115, 158, 0),    # bluish green
    "pec_minor": (0, 159, 230),    # orange
    "serratus": (167, 121, 204),   # reddish purple
    "bone": (200, 200, 200),       # light grey
    "pleura": (178, 114, 0),       # blue
    "needle": (255, 255, 255),     # white
}

# Voice layer names -> classes they switch.
LAYERS = {
    "nerve": ("nerve",),
    "vessel": ("vessel",),
    "fascia": ("fascia",),
    "muscle": ("pec_major", "pec_minor", "serratus"),
    "bone": ("bone",),
    "pleura": ("pleura",),
    "needle": ("needle",),
}
