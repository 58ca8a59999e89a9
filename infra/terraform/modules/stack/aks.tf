# The AKS cluster: a system pool for critical add-ons and an autoscaled application pool, both
# spread across three zones; Azure CNI; Entra ID RBAC with local accounts off; OIDC issuer and
# workload identity, with a user-assigned identity federated to the LiveOps ServiceAccount; the
# Key Vault Secrets Store CSI driver with rotation; Container Insights and managed Prometheus;
# the Application Gateway Ingress Controller add-on (its rights: gateway.tf).

resource "azurerm_kubernetes_cluster" "this" {
  #checkov:skip=CKV_AZURE_117:Disk encryption with a customer-managed key (disk encryption set) is not required by the design; OS and data disks are encrypted at rest with platform keys and at host.
  #checkov:skip=CKV_AZURE_226:Ephemeral OS disks need VM sizes with a large enough cache; the pools use managed OS disks so any size in the variables works.
  #checkov:skip=CKV_AZURE_115:The API server is private in prod (tests/check_structure.py holds prod to it); dev's is public so CI agents reach it without peering, limited to aks.api_authorized_ip_ranges.
  #checkov:skip=CKV_AZURE_6:Dev's public API server is limited to aks.api_authorized_ip_ranges (validated: at least one CIDR, never 0.0.0.0/0), a variable checkov cannot resolve; prod's API server is private.
  #checkov:skip=CKV_AZURE_170:Standard tier (uptime SLA) in prod (tests/check_structure.py holds prod to it); dev runs the Free tier to stay cheap.
  name                              = "${var.name_prefix}-aks"
  location                          = var.location
  resource_group_name               = azurerm_resource_group.this.name
  dns_prefix                        = var.name_prefix
  kubernetes_version                = var.aks.kubernetes_version
  sku_tier                          = var.aks.sku_tier
  automatic_upgrade_channel         = "patch"
  node_os_upgrade_channel           = "NodeImage"
  oidc_issuer_enabled               = true
  workload_identity_enabled         = true
  local_account_disabled            = true
  role_based_access_control_enabled = true
  azure_policy_enabled              = true
  private_cluster_enabled           = var.aks.private_cluster
  image_cleaner_enabled             = true
  image_cleaner_interval_hours      = 48
  tags                              = local.tags

  default_node_pool {
    name                         = "system"
    vm_size                      = var.aks.system_pool.vm_size
    node_count                   = var.aks.system_pool.node_count
    zones                        = ["1", "2", "3"]
    vnet_subnet_id               = azurerm_subnet.this["aks"].id
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
    identity_ids = [azurerm_user_assigned_identity.this["aks-cp"].id]
  }

  azure_active_directory_role_based_access_control {
    tenant_id              = data.azurerm_client_config.current.tenant_id
    admin_group_object_ids = var.aks.admin_group_object_ids
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
    for_each = var.aks.private_cluster ? [] : [1]
    content {
      authorized_ip_ranges = var.aks.api_authorized_ip_ranges
    }
  }

  key_vault_secrets_provider {
    secret_rotation_enabled  = true
    secret_rotation_interval = "2m"
  }

  oms_agent {
    log_analytics_workspace_id      = azurerm_log_analytics_workspace.this.id
    msi_auth_for_monitoring_enabled = true
  }

  # Managed Prometheus (ama-metrics, with its PodMonitor kind, azmonitoring.coreos.com); the data
  # collection rule and the rule groups are in monitoring.tf and prometheus-rules.tf.json. It
  # scrapes the LiveOps pods through deploy/k8s/components/managed-prometheus (Argo CD).
  monitor_metrics {}

  ingress_application_gateway {
    gateway_id = azurerm_application_gateway.this.id
  }

  depends_on = [azurerm_role_assignment.control_plane_network]
}

resource "azurerm_kubernetes_cluster_node_pool" "app" {
  name                    = "app"
  kubernetes_cluster_id   = azurerm_kubernetes_cluster.this.id
  mode                    = "User"
  vm_size                 = var.aks.app_pool.vm_size
  zones                   = ["1", "2", "3"]
  vnet_subnet_id          = azurerm_subnet.this["aks"].id
  auto_scaling_enabled    = true
  min_count               = var.aks.app_pool.min_count
  max_count               = var.aks.app_pool.max_count
  max_pods                = 110
  host_encryption_enabled = true
  os_sku                  = "AzureLinux"
  node_labels             = { "liveops.io/pool" = "app" }
  tags                    = local.tags

  upgrade_settings {
    max_surge = "33%"
  }
}

# The control plane manages load balancers and addresses in the node subnet (before the cluster
# is created: depends_on above).
resource "azurerm_role_assignment" "control_plane_network" {
  scope                = azurerm_subnet.this["aks"].id
  role_definition_name = "Network Contributor"
  principal_id         = azurerm_user_assigned_identity.this["aks-cp"].principal_id
  principal_type       = "ServicePrincipal"
}

# Pull images from the registry with the kubelet identity.
resource "azurerm_role_assignment" "kubelet_acr_pull" {
  scope                = azurerm_container_registry.this.id
  role_definition_name = "AcrPull"
  principal_id         = azurerm_kubernetes_cluster.this.kubelet_identity[0].object_id
  principal_type       = "ServicePrincipal"
}

locals {
  # The ServiceAccount the LiveOps workloads run as.
  workload_namespace       = "liveops"
  workload_service_account = "liveops"
}

# Pods running as the LiveOps ServiceAccount exchange their projected token for an Entra ID token
# of the workload identity (Key Vault, Service Bus, Storage).
resource "azurerm_federated_identity_credential" "workload" {
  name                = "${var.name_prefix}-${local.workload_namespace}-${local.workload_service_account}"
  resource_group_name = azurerm_resource_group.this.name
  parent_id           = azurerm_user_assigned_identity.this["liveops-workload"].id
  audience            = ["api://AzureADTokenExchange"]
  issuer              = azurerm_kubernetes_cluster.this.oidc_issuer_url
  subject             = "system:serviceaccount:${local.workload_namespace}:${local.workload_service_account}"
}
