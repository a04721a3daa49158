-- Asks the operator to reconcile now: a new value of the annotation
-- ospkg.dev/reconcile-requested-at (the current time) triggers a reconcile and lifts a stall
-- caused by a rejected call or a failed association, as `kubectl annotate` would.
-- Argo CD gives action scripts os.time and os.date through require("os").
local os = require("os")
if obj.metadata.annotations == nil then
  obj.metadata.annotations = {}
end
obj.metadata.annotations["ospkg.dev/reconcile-requested-at"] = os.date("!%Y-%m-%dT%H:%M:%SZ")
return obj
