# The AKS cluster: a system pool for critical add-ons and an autoscaled application pool, both
# spread across three zones; Azure CNI; Entra ID RBAC with local accounts off; OIDC issuer and
# workload identity, with a user-assigned identity federated to the LiveOps ServiceAccount; the
# Key Vault Secrets Store CSI driver with rotation; Container Insights and managed Prometheus;
# the Application Gateway Ingress Controller add-on.

data "azurerm_client_config" "current" {}

resource "azurerm_user_assigned_identity" "control_plane" {
  name                = "${var.name_prefix}-aks-cp"
  location            = var.location
  resource_group_name = var.resource_group_name
  tags                = var.tags
}

# The control plane manages load balancers and addresses in the node subnet.
resource "azurerm_role_assignment" "control_plane_network" {
  scope                = var.subnet_id
  role_definition_name = "Network Contributor"
  principal_id         = azurerm_user_assigned_identity.control_plane.principal_id
  principal_type       = "ServicePrincipal"
}

resource "azurerm_kubernetes_cluster" "this" {
  #checkov:skip=CKV_AZURE_117:Disk encryption with a customer-managed key (disk encryption set) is not required by the design; OS and data disks are encrypted at rest with platform keys and at host.
  #checkov:skip=CKV_AZURE_226:Ephemeral OS disks need VM sizes with a large enough cache; the pools use managed OS disks so any size in the variables works.
  name                              = "${var.name_prefix}-aks"
  location                          = var.location
  resource_group_name               = var.resource_group_name
  dns_prefix                        = var.name_prefix
  kubernetes_version                = var.kubernetes_version
  sku_tier                          = var.sku_tier
  automatic_upgrade_channel         = "patch"
  node_os_upgrade_channel           = "NodeImage"
  oidc_issuer_enabled               = true
  workload_identity_enabled         = true
  local_account_disabled            = true
  role_based_access_control_enabled = true
  azure_policy_enabled              = true
  private_cluster_enabled           = var.private_cluster
  image_cleaner_enabled             = true
  image_cleaner_interval_hours      = 48
  tags                              = var.tags

  default_node_pool {
    name                         = "system"
    vm_size                      = var.system_pool.vm_size
    node_count                   = var.system_pool.node_count
    zones                        = var.zones
    vnet_subnet_id               = var.subnet_id
    only_critical_addons_enabled = true
    host_encryption_enabled      = true
    max_pods                     = 50
    os_sku                       = "AzureLinux"
    temporary_name_for_rotation  = "systemtmp"

    upgrade_settings {
      max_surge = "33%"
    }
  }

  identity {
    type         = "UserAssigned"
    identity_ids = [azurerm_user_assigned_identity.control_plane.id]
  }

  azure_active_directory_role_based_access_control {
    tenant_id              = data.azurerm_client_config.current.tenant_id
    admin_group_object_ids = var.admin_group_object_ids
    azure_rbac_enabled     = true
  }

  network_profile {
    network_plugin    = "azure"
    network_policy    = "azure"
    load_balancer_sku = "standard"
    outbound_type     = "loadBalancer"
    service_cidr      = "172.16.0.0/16"
    dns_service_ip    = "172.16.0.10"
  }

  dynamic "api_server_access_profile" {
    for_each = var.private_cluster ? [] : [1]
    content {
      authorized_ip_ranges = var.api_authorized_ip_ranges
    }
  }

  key_vault_secrets_provider {
    secret_rotation_enabled  = true
    secret_rotation_interval = "2m"
  }

  oms_agent {
    log_analytics_workspace_id      = var.log_analytics_workspace_id
    msi_auth_for_monitoring_enabled = true
  }

  # Managed Prometheus (ama-metrics); the data collection rule lives in the monitoring module.
  monitor_metrics {}

  ingress_application_gateway {
    gateway_id = var.application_gateway_id
  }

  lifecycle {
    precondition {
      condition     = var.private_cluster || length(var.api_authorized_ip_ranges) > 0
      error_message = "A public API server needs api_authorized_ip_ranges; otherwise set private_cluster."
    }
  }

  depends_on = [azurerm_role_assignment.control_plane_network]
}

resource "azurerm_kubernetes_cluster_node_pool" "app" {
  name                    = "app"
  kubernetes_cluster_id   = azurerm_kubernetes_cluster.this.id
  mode                    = "User"
  vm_size                 = var.app_pool.vm_size
  zones                   = var.zones
  vnet_subnet_id          = var.subnet_id
  auto_scaling_enabled    = true
  min_count               = var.app_pool.min_count
  max_count               = var.app_pool.max_count
  max_pods                = var.app_pool_max_pods
  host_encryption_enabled = true
  os_sku                  = "AzureLinux"
  node_labels             = { "liveops.io/pool" = "app" }
  tags                    = var.tags

  upgrade_settings {
    max_surge = "33%"
  }
}

# Pull images from the registry with the kubelet identity.
resource "azurerm_role_assignment" "kubelet_acr_pull" {
  scope                = var.acr_id
  role_definition_name = "AcrPull"
  principal_id         = azurerm_kubernetes_cluster.this.kubelet_identity[0].object_id
  principal_type       = "ServicePrincipal"
}

# AGIC reconfigures the gateway and joins its subnet.
resource "azurerm_role_assignment" "agic_gateway" {
  scope                = var.application_gateway_id
  role_definition_name = "Contributor"
  principal_id         = azurerm_kubernetes_cluster.this.ingress_application_gateway[0].ingress_application_gateway_identity[0].object_id
  principal_type       = "ServicePrincipal"
}

resource "azurerm_role_assignment" "agic_subnet" {
  scope                = var.application_gateway_subnet_id
  role_definition_name = "Network Contributor"
  principal_id         = azurerm_kubernetes_cluster.this.ingress_application_gateway[0].ingress_application_gateway_identity[0].object_id
  principal_type       = "ServicePrincipal"
}

# The LiveOps workloads' identity: pods running as ServiceAccount liveops/liveops exchange their
# projected token for an Entra ID token of this identity (Key Vault, Service Bus, Storage).
resource "azurerm_user_assigned_identity" "workload" {
  name                = "${var.name_prefix}-liveops-workload"
  location            = var.location
  resource_group_name = var.resource_group_name
  tags                = var.tags
}

resource "azurerm_federated_identity_credential" "workload" {
  name                = "${var.name_prefix}-${var.workload_namespace}-${var.workload_service_account}"
  resource_group_name = var.resource_group_name
  parent_id           = azurerm_user_assigned_identity.workload.id
  audience            = ["api://AzureADTokenExchange"]
  issuer              = azurerm_kubernetes_cluster.this.oidc_issuer_url
  subject             = "system:serviceaccount:${var.workload_namespace}:${var.workload_service_account}"
}

resource "azurerm_monitor_diagnostic_setting" "control_plane" {
  name                       = "control-plane"
  target_resource_id         = azurerm_kubernetes_cluster.this.id
  log_analytics_workspace_id = var.log_analytics_workspace_id

  enabled_log {
    category = "kube-audit-admin"
  }

  enabled_log {
    category = "kube-apiserver"
  }

  enabled_log {
    category = "cluster-autoscaler"
  }

  enabled_log {
    category = "guard"
  }
}
