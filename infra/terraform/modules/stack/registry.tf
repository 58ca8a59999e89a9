# The image registry. Admin user off: pushes use the CI service principal (AcrPush), pulls the
# AKS kubelet identity (AcrPull, aks.tf). Premium (prod) is zone-redundant, keeps untagged
# manifests 7 days and is reached only through its private endpoint (network.tf); Standard (dev)
# cannot have one and keeps its public endpoint, with Entra ID authentication only.

locals {
  acr_premium = var.registry.sku == "Premium"
}

resource "azurerm_container_registry" "this" {
  #checkov:skip=CKV_AZURE_164:Content trust (Docker Notary v1) is being retired by Azure; images are pinned by the commit SHA the pipeline built and scanned.
  #checkov:skip=CKV_AZURE_166:Quarantine needs a scanner that releases images; the pipeline scans every image with Trivy (HIGH/CRITICAL fail the build) before it pushes, so only scanned images reach the registry.
  #checkov:skip=CKV_AZURE_165:One region today; geo-replication (georeplications blocks, Premium) comes when the cluster goes multi-region.
  #checkov:skip=CKV_AZURE_233:zone_redundancy_enabled follows the SKU: on for Premium (prod); Standard (dev) has no zone redundancy to turn on.
  #checkov:skip=CKV_AZURE_139:Public access is off for Premium (prod), reached through its private endpoint; dev's Standard registry cannot have private endpoints and relies on Entra ID authentication (admin user off).
  name                          = var.registry.name
  location                      = var.location
  resource_group_name           = azurerm_resource_group.this.name
  sku                           = var.registry.sku
  admin_enabled                 = false
  anonymous_pull_enabled        = false
  public_network_access_enabled = !local.acr_premium
  zone_redundancy_enabled       = local.acr_premium
  data_endpoint_enabled         = local.acr_premium
  export_policy_enabled         = !local.acr_premium
  quarantine_policy_enabled     = false
  retention_policy_in_days      = local.acr_premium ? 7 : null
  network_rule_bypass_option    = "AzureServices"
  tags                          = local.tags
}

# Jenkins pushes images with its service principal.
resource "azurerm_role_assignment" "ci_acr_push" {
  scope                = azurerm_container_registry.this.id
  role_definition_name = "AcrPush"
  principal_id         = var.registry.push_principal_id
  principal_type       = "ServicePrincipal"
}
