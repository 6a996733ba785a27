"""Microcontrollers and microNPUs: Arm's Vela compiler for Ethos-U NPUs (``vela``)."""
