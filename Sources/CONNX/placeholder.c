int connx_placeholder(void) { return 0; }
