"""Feature keys of the action-detection SequenceExamples (one record per keyframe), on top of `feature_keys`.

A detection record is a video SequenceExample (`feature_keys.IMAGE_KEY`: the JPEG frames of a clip around the
keyframe, `feature_keys.VIDEO_ID_KEY`: the video id) with these context features. Boxes are normalised
`[0, 1]` coordinates of the stored frames, in four parallel float lists (Model Garden's object-detection layout).
Labels are multi-label per box: one (box index, class index) pair per action of a person, as AVA's CSV rows.
"""

KEYFRAME_INDEX_KEY = 'clip/keyframe/frame_index'  # int64: position of the keyframe among the stored frames.
KEYFRAME_TIMESTAMP_KEY = 'clip/keyframe/timestamp'  # int64: keyframe time in whole seconds (AVA's timestamp).

# Ground-truth person boxes, one entry per box.
BOX_YMIN_KEY = 'clip/keyframe/bbox/ymin'
BOX_XMIN_KEY = 'clip/keyframe/bbox/xmin'
BOX_YMAX_KEY = 'clip/keyframe/bbox/ymax'
BOX_XMAX_KEY = 'clip/keyframe/bbox/xmax'
# One entry per (box, action) pair: which box, and the action's class index in [0, num_classes).
LABEL_BOX_INDEX_KEY = 'clip/keyframe/label/box_index'
LABEL_CLASS_INDEX_KEY = 'clip/keyframe/label/class_index'

# Person proposals (detector boxes) used at evaluation, one entry per box, with the detector's score.
PROPOSAL_YMIN_KEY = 'clip/keyframe/proposal/bbox/ymin'
PROPOSAL_XMIN_KEY = 'clip/keyframe/proposal/bbox/xmin'
PROPOSAL_YMAX_KEY = 'clip/keyframe/proposal/bbox/ymax'
PROPOSAL_XMAX_KEY = 'clip/keyframe/proposal/bbox/xmax'
PROPOSAL_SCORE_KEY = 'clip/keyframe/proposal/score'

BOX_KEYS = (BOX_YMIN_KEY, BOX_XMIN_KEY, BOX_YMAX_KEY, BOX_XMAX_KEY)
PROPOSAL_KEYS = (PROPOSAL_YMIN_KEY, PROPOSAL_XMIN_KEY, PROPOSAL_YMAX_KEY, PROPOSAL_XMAX_KEY)
