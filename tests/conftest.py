"""Shared by every test directory: this folder is on sys.path (pytest puts a conftest's folder there), so test
modules anywhere under tests/ import the helpers beside it (`hostile`).

OpenCV runs on the calling thread in the test process: the hostile-file suites fork children, and a child of a
process whose OpenCV thread pool was started waits for ever on threads it does not have."""

import cv2

cv2.setNumThreads(1)
