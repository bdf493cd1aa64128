"""Codecs for several receivers or side information: Gray-Wyner, Wyner-Ziv and Slepian-Wolf coding."""
