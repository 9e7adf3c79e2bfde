"""Optional accelerations of the model's reference paths. Each computes what its reference
computes (tested equal), can be switched off, and exists only because it was measured faster.

- lstm_kernels: which kernel runs an LSTM layer. The reference is torch's own fused LSTM
  (cuDNN on GPU, oneDNN on CPU; `model.lstm_kernel=fused`); `BF16StepLSTM` is a step loop that
  keeps every product in bf16 for CPU training under bf16 autocast (`auto` picks it for big
  layers, `step` forces it).
- fused_softmax: the LM's decoder and softmax cross-entropy in one pass over row chunks, so the
  (tokens x vocab) logits are never built. The reference is the decoder followed by
  F.cross_entropy (`model.fused_softmax=false`).
"""
