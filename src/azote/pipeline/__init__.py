"""Multi-stage jobs built from every package: the main job (`azote demo`) and the pre-training experiment."""
