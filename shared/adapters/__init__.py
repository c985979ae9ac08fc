"""The I/O both programs share: camera and video files, QR decoders, the scan loop.

``shared/``'s pure core (formats and rules) does no I/O and loads no device or native
library, so every rule in it can be tested and replayed byte for byte; this package is
where the QR transport meets the world, and import-linter checks that the core never
imports it (``pyproject.toml``). Both programs scan QR codes (the coordinator the
appliance's answers, the appliance the coordinator's requests) and the tests drive the
very same path with generated videos (DESIGN 7): one adapter beats two copies that drift.

* ``camera``: frames from a camera or a video file (OpenCV ``VideoCapture``);
* ``video``: frames, or a UR as an animated QR, to a video file (``VideoWriter``);
* ``decoders``: QR codes in a frame (zxing-cpp, then pyzbar);
* ``receiver``: frames in, one verified UR or BBQr payload out;
* ``scan``: the one "scan until complete" loop, over a frame source;
* ``channel``: a simulated screen-to-camera channel for tests and benchmarks.

Nothing is re-exported here: each module loads OpenCV or a native decoder, paid for only
by the program that scans.
"""
