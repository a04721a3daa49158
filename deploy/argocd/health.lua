-- Argo CD health check for ospkg.dev/OpenSearchPackage.
-- Install as resource.customizations.health.ospkg.dev_OpenSearchPackage in argocd-cm.
--
-- Written for Argo CD's restricted Lua: only base functions and the table library are used
-- (no string, math, os or io), so it needs no resource.customizations.useOpenLibs setting.
--
--   Suspended   spec.suspend is true, or Ready has reason Suspended
--   Progressing no status yet, status or a condition describes an older generation,
--               or Reconciling is True, or Ready is not True for any other reason
--   Degraded    Stalled is True (the user must change something), or Ready is False with
--               reason Failed
--   Healthy     Ready is True for the current generation

local hs = {}

local function find_condition(conditions, condition_type)
  if conditions == nil then
    return nil
  end
  for _, condition in ipairs(conditions) do
    if condition.type == condition_type then
      return condition
    end
  end
  return nil
end

local function message_of(condition, fallback)
  if condition ~= nil and condition.message ~= nil and condition.message ~= "" then
    return condition.message
  end
  return fallback
end

local generation = nil
if obj.metadata ~= nil then
  generation = obj.metadata.generation
end

if obj.spec ~= nil and obj.spec.suspend == true then
  local ready = nil
  if obj.status ~= nil then
    ready = find_condition(obj.status.conditions, "Ready")
  end
  hs.status = "Suspended"
  if ready ~= nil and ready.reason == "Suspended" then
    hs.message = message_of(ready, "Reconciliation is suspended")
  else
    hs.message = "Reconciliation is suspended (spec.suspend is true)"
  end
  return hs
end

if obj.status == nil or obj.status.conditions == nil then
  hs.status = "Progressing"
  hs.message = "Waiting for the operator to reconcile the package"
  return hs
end

local status = obj.status
if generation ~= nil and (status.observedGeneration == nil or status.observedGeneration < generation) then
  hs.status = "Progressing"
  hs.message = "Waiting for the operator to observe generation " .. generation
  return hs
end

local ready = find_condition(status.conditions, "Ready")
local reconciling = find_condition(status.conditions, "Reconciling")
local stalled = find_condition(status.conditions, "Stalled")

-- A condition written for an older generation says nothing about the current spec.
local function current(condition)
  if condition == nil then
    return nil
  end
  if generation ~= nil and condition.observedGeneration ~= nil and condition.observedGeneration < generation then
    return nil
  end
  return condition
end
ready = current(ready)
reconciling = current(reconciling)
stalled = current(stalled)

if stalled ~= nil and stalled.status == "True" then
  hs.status = "Degraded"
  hs.message = message_of(stalled, message_of(ready, "The package is stalled"))
  return hs
end

if ready ~= nil and ready.status == "False" and ready.reason == "Suspended" then
  hs.status = "Suspended"
  hs.message = message_of(ready, "Reconciliation is suspended")
  return hs
end

if reconciling ~= nil and reconciling.status == "True" then
  hs.status = "Progressing"
  hs.message = message_of(reconciling, message_of(ready, "Reconciling"))
  return hs
end

if ready ~= nil and ready.status == "True" then
  hs.status = "Healthy"
  hs.message = message_of(ready, "The package is available")
  return hs
end

if ready ~= nil and ready.status == "False" and ready.reason == "Failed" then
  hs.status = "Degraded"
  hs.message = message_of(ready, "The package failed")
  return hs
end

hs.status = "Progressing"
hs.message = message_of(ready, "Waiting for the Ready condition")
return hs
