"""The reference of an ONNX-file model: the user's own file run in onnxruntime, wrapped as a small
``torch.nn.Module`` (tensor -> numpy -> session -> tensor), so that verification, eval, the
``--max-drop`` search and bench's baseline row compare every artefact with the original file.

Imported only where an ONNX file is loaded (``edgekit.models.onnx_file``), like the zoo's
architecture files. The session opens on first use and is not pickled: the export worker and Ray
tasks get the path and open their own.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn as nn


class OnnxReference(nn.Module):
    """Runs ``onnx_path`` in onnxruntime. A file whose batch is fixed (``dynamic_batch`` False) gets
    a larger batch one sample at a time, its outputs joined on ``output_batch_axis``."""

    runtime = "onnxruntime (source file)"  # how bench's baseline row names what it timed
    label = "onnxruntime (source)"  # how eval and the report name the reference row (format "pytorch")

    def __init__(self, onnx_path: Path, batch_axis: int = 0, output_batch_axis: int = 0,
                 dynamic_batch: bool = False):
        super().__init__()
        self.onnx_path = Path(onnx_path)
        self.batch_axis = batch_axis
        self.output_batch_axis = output_batch_axis
        self.dynamic_batch = dynamic_batch
        self._session = None

    def session(self):
        """The onnxruntime session (CPU, torch's intra-op thread count), opened once."""
        if self._session is None:
            import onnxruntime as ort

            opts = ort.SessionOptions()
            opts.intra_op_num_threads = torch.get_num_threads()
            opts.log_severity_level = 3  # errors only: the file is the user's, its warnings are noise here
            self._session = ort.InferenceSession(str(self.onnx_path), opts,
                                                 providers=["CPUExecutionProvider"])
        return self._session

    def forward(self, *xs: torch.Tensor) -> torch.Tensor | tuple[torch.Tensor, ...]:
        """The file's output for ``xs``, one tensor per graph input in order; a tuple of tensors
        where the file has several outputs."""
        session = self.session()
        feed = {i.name: np.ascontiguousarray(x.detach().cpu().numpy(), dtype=np.float32)
                for i, x in zip(session.get_inputs(), xs)}
        first = next(iter(feed.values()))
        if self.dynamic_batch or first.shape[self.batch_axis] == 1:
            ys = session.run(None, feed)
        else:  # one sample at a time, along the batch axis of every input
            n = first.shape[self.batch_axis]
            parts = [session.run(None, {k: np.ascontiguousarray(np.take(v, [i], axis=self.batch_axis))
                                        for k, v in feed.items()}) for i in range(n)]
            ys = [np.concatenate([p[j] for p in parts], axis=self.output_batch_axis)
                  for j in range(len(parts[0]))]
        outs = tuple(torch.from_numpy(np.ascontiguousarray(y)) for y in ys)
        return outs[0] if len(outs) == 1 else outs

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        state["_session"] = None  # an InferenceSession cannot be pickled; the receiver opens its own
        return state

    def extra_repr(self) -> str:
        return f"{self.onnx_path}, batch_axis={self.batch_axis}, dynamic_batch={self.dynamic_batch}"
