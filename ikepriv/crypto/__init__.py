"""ikepriv: privilege-separated IKEv1 keying daemon."""
