// Service graph: not built yet (see docs/design/0014-manager-ui.md).
