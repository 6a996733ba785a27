"""Microcontrollers and microNPUs: TensorFlow Lite Micro and Arm's Vela."""
