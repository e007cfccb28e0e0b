"""Our routes as a record processor *inside* the Java KCL's MultiLangDaemon
(``executableName = python -m processor.kcl --config dsp.toml``;
:mod:`processor.kcl.record_processor`). The other direction, our own daemon driving
unchanged amazon_kclpy processors instead of the JVM (``dsp multilang``), is
:mod:`processor.kclpy_daemon`.
"""
