"""The Open Inference Protocol (KServe V2 / Triton HTTP) front door, beside /api/v1: `routes` (the
endpoints), `codec` (tensors on the wire), `kinds` (each model kind's tensors), `errors` ({"error"})."""
