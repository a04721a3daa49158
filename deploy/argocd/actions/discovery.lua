-- Argo CD resource actions for ospkg.dev/OpenSearchPackage: which ones the UI and
-- `argocd app actions list` offer for this object.
-- Install with the action scripts as resource.customizations.actions.ospkg.dev_OpenSearchPackage
-- in argocd-cm (examples/argocd/argocd-cm.yaml is that snippet).
--
--   reconcile  sets ospkg.dev/reconcile-requested-at: reconcile now, and lift a stall caused by
--              a rejected call or a failed association; not offered while suspended
--   suspend    sets spec.suspend: no AWS changes until resumed; offered while not suspended
--   resume     clears spec.suspend; offered while suspended
local actions = {}
local suspended = obj.spec ~= nil and obj.spec.suspend == true

actions["reconcile"] = {
  ["disabled"] = suspended,
  ["iconClass"] = "fa fa-fw fa-redo",
  ["displayName"] = "Reconcile now"
}
actions["suspend"] = {
  ["disabled"] = suspended,
  ["iconClass"] = "fa fa-fw fa-pause",
  ["displayName"] = "Suspend reconciliation"
}
actions["resume"] = {
  ["disabled"] = not suspended,
  ["iconClass"] = "fa fa-fw fa-play",
  ["displayName"] = "Resume reconciliation"
}
return actions
