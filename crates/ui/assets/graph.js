// Service graph: not built yet (see docs/design/0010-manager-ui.md).
