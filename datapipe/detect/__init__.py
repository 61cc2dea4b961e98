"""The object tasks' stage work: the given objects as per-image targets, out-of-fold scoring
into per-object label issues and hard / easy rows, per-object curation, and the final
detector's training and COCO evaluation. The task module (``datapipe.tasks.detection``)
chooses these; the generic stages call it."""
