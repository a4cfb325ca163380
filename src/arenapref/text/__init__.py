"""Pure text functions: rendering turns and measuring responses. No model code here."""
