int ikepriv_dh_version(void) { return 0; }
