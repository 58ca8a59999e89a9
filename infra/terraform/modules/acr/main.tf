# The image registry. Admin user off: pushes use the CI service principal (AcrPush), pulls the
# AKS kubelet identity (AcrPull, granted by the aks module). In prod (Premium) the public
# endpoint is off and the registry is reached through a private endpoint in the data subnet.

locals {
  premium          = var.sku == "Premium"
  private_endpoint = local.premium && var.private_endpoint_subnet_id != ""
}

resource "azurerm_container_registry" "this" {
  #checkov:skip=CKV_AZURE_164:Content trust (Docker Notary v1) is being retired by Azure; images are pinned by the commit SHA the pipeline built and scanned.
  #checkov:skip=CKV_AZURE_166:Quarantine needs a scanner that releases images; the pipeline scans every image with Trivy (HIGH/CRITICAL fail the build) before it pushes, so only scanned images reach the registry.
  #checkov:skip=CKV_AZURE_165:One region today; georeplication_locations adds replicas when the cluster goes multi-region.
  #checkov:skip=CKV_AZURE_233:zone_redundancy_enabled follows var.sku: on for Premium (prod); Standard (dev) has no zone redundancy to turn on.
  #checkov:skip=CKV_AZURE_139:Public access is off whenever a private endpoint is configured (prod, Premium); dev's Standard registry cannot have private endpoints and relies on Entra ID authentication (admin user off).
  name                          = var.name
  location                      = var.location
  resource_group_name           = var.resource_group_name
  sku                           = var.sku
  admin_enabled                 = false
  anonymous_pull_enabled        = false
  public_network_access_enabled = !local.private_endpoint
  zone_redundancy_enabled       = local.premium
  data_endpoint_enabled         = local.premium
  export_policy_enabled         = !local.private_endpoint
  quarantine_policy_enabled     = false
  retention_policy_in_days      = local.premium ? var.untagged_retention_days : null
  network_rule_bypass_option    = "AzureServices"
  tags                          = var.tags

  dynamic "network_rule_set" {
    for_each = local.premium && !local.private_endpoint ? [1] : []
    content {
      default_action = "Deny"
      dynamic "ip_rule" {
        for_each = var.allowed_ip_ranges
        content {
          action   = "Allow"
          ip_range = ip_rule.value
        }
      }
    }
  }

  dynamic "georeplications" {
    for_each = local.premium ? var.georeplication_locations : []
    content {
      location                = georeplications.value
      zone_redundancy_enabled = true
      tags                    = var.tags
    }
  }
}

resource "azurerm_private_endpoint" "this" {
  count = local.private_endpoint ? 1 : 0

  name                = "${var.name}-pe"
  location            = var.location
  resource_group_name = var.resource_group_name
  subnet_id           = var.private_endpoint_subnet_id
  tags                = var.tags

  private_service_connection {
    name                           = "${var.name}-psc"
    private_connection_resource_id = azurerm_container_registry.this.id
    subresource_names              = ["registry"]
    is_manual_connection           = false
  }

  private_dns_zone_group {
    name                 = "acr"
    private_dns_zone_ids = [var.private_dns_zone_id]
  }
}
