"""Protocol buffers of the DELF file formats; the *_pb2.py files are generated (make protos)."""
