# One virtual network with a subnet per tier, each with its own network security group; a NAT
# gateway for the VM's outbound traffic; a private DNS zone per private-link service and every
# private endpoint of the environment, all in the data subnet.

locals {
  subnets = {
    # /20: Azure CNI gives every pod an address (15 nodes x 110 pods + surge fits in 4096).
    aks = cidrsubnet(var.network.address_space, 4, 0)
    # /24 each for private endpoints and the Application Gateway (v2 wants a dedicated /24).
    data  = cidrsubnet(var.network.address_space, 8, 16)
    appgw = cidrsubnet(var.network.address_space, 8, 17)
    # /27 for the MySQL VM.
    vm = cidrsubnet(var.network.address_space, 11, 144)
  }

  # Inbound rules of each subnet's network security group, from any source port. The data and VM
  # groups end with an explicit deny, because Azure's default rule AllowVnetInBound would
  # otherwise let every subnet in.
  inbound_rules = {
    # AKS adds its own rules on the node resource group's group; this one documents intent and
    # keeps the subnet compliant (every subnet has a group).
    aks = []

    # Private endpoints, reached only from the cluster, the VM and the Application Gateway (Key
    # Vault certificate): 443 Key Vault / ACR / Blob / Service Bus HTTPS, 5432 PostgreSQL,
    # 5671-5672 AMQP, 6380 Redis TLS, 10000-10002 Redis clustered.
    data = [
      { name = "allow-private-endpoints-from-workloads", priority = 100, access = "Allow", protocol = "Tcp", from = [local.subnets.aks, local.subnets.vm, local.subnets.appgw], to = local.subnets.data, ports = ["443", "5432", "5671-5672", "6380", "10000-10002"] },
      { name = "deny-other-vnet-inbound", priority = 4000, access = "Deny", protocol = "*", from = ["VirtualNetwork"], to = "*", ports = ["*"] },
    ]

    # HTTPS only (no plain HTTP) from the internet, and what Azure's gateway manager needs for v2
    # SKUs (65200-65535 from the GatewayManager service tag) and the load balancer's probes.
    appgw = [
      { name = "allow-https-from-internet", priority = 100, access = "Allow", protocol = "Tcp", from = ["Internet"], to = "*", ports = ["443"] },
      { name = "allow-gateway-manager", priority = 110, access = "Allow", protocol = "Tcp", from = ["GatewayManager"], to = "*", ports = ["65200-65535"] },
      { name = "allow-azure-load-balancer", priority = 120, access = "Allow", protocol = "*", from = ["AzureLoadBalancer"], to = "*", ports = ["*"] },
    ]

    # MySQL and its exporters (node_exporter, mysqld_exporter) from the AKS subnet only; SSH from
    # the admin CIDR or not at all; everything else denied.
    vm = concat(
      [
        { name = "allow-mysql-from-aks", priority = 100, access = "Allow", protocol = "Tcp", from = [local.subnets.aks], to = local.subnets.vm, ports = ["3306"] },
        { name = "allow-exporters-from-aks", priority = 110, access = "Allow", protocol = "Tcp", from = [local.subnets.aks], to = local.subnets.vm, ports = ["9100", "9104"] },
      ],
      var.network.admin_ssh_cidr == "" ? [] : [
        { name = "allow-ssh-from-admin", priority = 200, access = "Allow", protocol = "Tcp", from = [var.network.admin_ssh_cidr], to = local.subnets.vm, ports = ["22"] },
      ],
      [
        { name = "deny-all-other-inbound", priority = 4000, access = "Deny", protocol = "*", from = ["*"], to = "*", ports = ["*"] },
      ],
    )
  }

  # Each private-link service: the zone its endpoints register in and the sub-resource (group ID)
  # they connect to.
  private_link_services = {
    redis      = { zone = "privatelink.redis.cache.windows.net", subresource = "redisCache" }
    postgres   = { zone = "privatelink.postgres.database.azure.com", subresource = "postgresqlServer" }
    servicebus = { zone = "privatelink.servicebus.windows.net", subresource = "namespace" }
    keyvault   = { zone = "privatelink.vaultcore.azure.net", subresource = "vault" }
    acr        = { zone = "privatelink.azurecr.io", subresource = "registry" }
    blob       = { zone = "privatelink.blob.core.windows.net", subresource = "blob" }
  }

  # Every private endpoint, by the name of the resource it connects to (the endpoint is
  # <name>-pe; for the backup storage account, whose name cannot have dashes, <prefix>-mysqlbk).
  # Redis, PostgreSQL and its replica, Key Vault and the MySQL backups always have one; the
  # registry and the Service Bus namespace only when Premium (Standard cannot).
  private_endpoints = merge(
    {
      (azurerm_redis_cache.this.name)                = { id = azurerm_redis_cache.this.id, service = "redis" }
      (azurerm_postgresql_flexible_server.this.name) = { id = azurerm_postgresql_flexible_server.this.id, service = "postgres" }
      (azurerm_key_vault.this.name)                  = { id = azurerm_key_vault.this.id, service = "keyvault" }
      "${var.name_prefix}-mysqlbk"                   = { id = azurerm_storage_account.mysql_backups.id, service = "blob" }
    },
    { for replica in azurerm_postgresql_flexible_server.replica : replica.name => { id = replica.id, service = "postgres" } },
    local.acr_premium ? { (azurerm_container_registry.this.name) = { id = azurerm_container_registry.this.id, service = "acr" } } : {},
    local.servicebus_premium ? { (azurerm_servicebus_namespace.this.name) = { id = azurerm_servicebus_namespace.this.id, service = "servicebus" } } : {},
  )
}

resource "azurerm_virtual_network" "this" {
  name                = "${var.name_prefix}-vnet"
  location            = var.location
  resource_group_name = azurerm_resource_group.this.name
  address_space       = [var.network.address_space]
  tags                = local.tags
}

resource "azurerm_subnet" "this" {
  for_each = local.subnets

  name                 = each.key
  resource_group_name  = azurerm_resource_group.this.name
  virtual_network_name = azurerm_virtual_network.this.name
  address_prefixes     = [each.value]
  # Network security groups apply to the private endpoints in the data subnet.
  private_endpoint_network_policies = each.key == "data" ? "Enabled" : "Disabled"
  # The VM subnet goes out through the NAT gateway below, never through an implicit address.
  default_outbound_access_enabled = each.key != "vm"
}

#trivy:ignore:AVD-AZU-0047[each.key=appgw] The gateway subnet takes HTTPS (443 only) from the internet: it is the public game API, behind the WAF. Every other group's sources are named.
resource "azurerm_network_security_group" "this" {
  for_each = local.inbound_rules

  name                = "${var.name_prefix}-${each.key}-nsg"
  location            = var.location
  resource_group_name = azurerm_resource_group.this.name
  tags                = local.tags

  dynamic "security_rule" {
    for_each = each.value
    iterator = rule

    content {
      name                       = rule.value.name
      priority                   = rule.value.priority
      direction                  = "Inbound"
      access                     = rule.value.access
      protocol                   = rule.value.protocol
      source_port_range          = "*"
      source_address_prefix      = length(rule.value.from) == 1 ? rule.value.from[0] : null
      source_address_prefixes    = length(rule.value.from) > 1 ? rule.value.from : null
      destination_address_prefix = rule.value.to
      destination_port_range     = length(rule.value.ports) == 1 ? rule.value.ports[0] : null
      destination_port_ranges    = length(rule.value.ports) > 1 ? rule.value.ports : null
    }
  }
}

resource "azurerm_subnet_network_security_group_association" "this" {
  for_each = local.subnets

  subnet_id                 = azurerm_subnet.this[each.key].id
  network_security_group_id = azurerm_network_security_group.this[each.key].id
}

# The environment's only public addresses: the game API (the Application Gateway, gateway.tf) and
# the VM's outbound traffic (packages; Key Vault is reached over its private endpoint), which
# leaves through a NAT gateway because new subnets get no default outbound access.
resource "azurerm_public_ip" "this" {
  for_each = toset(["appgw", "nat"])

  name                = "${var.name_prefix}-${each.key}-pip"
  location            = var.location
  resource_group_name = azurerm_resource_group.this.name
  allocation_method   = "Static"
  sku                 = "Standard"
  zones               = ["1", "2", "3"]
  tags                = local.tags
}

resource "azurerm_nat_gateway" "vm" {
  name                    = "${var.name_prefix}-nat"
  location                = var.location
  resource_group_name     = azurerm_resource_group.this.name
  sku_name                = "Standard"
  idle_timeout_in_minutes = 10
  tags                    = local.tags
}

resource "azurerm_nat_gateway_public_ip_association" "vm" {
  nat_gateway_id       = azurerm_nat_gateway.vm.id
  public_ip_address_id = azurerm_public_ip.this["nat"].id
}

resource "azurerm_subnet_nat_gateway_association" "vm" {
  subnet_id      = azurerm_subnet.this["vm"].id
  nat_gateway_id = azurerm_nat_gateway.vm.id
}

# --- Private link: one DNS zone per service, linked to the virtual network so the services'
# public names resolve to their private endpoints from inside it.
resource "azurerm_private_dns_zone" "this" {
  for_each = local.private_link_services

  name                = each.value.zone
  resource_group_name = azurerm_resource_group.this.name
  tags                = local.tags
}

resource "azurerm_private_dns_zone_virtual_network_link" "this" {
  for_each = local.private_link_services

  name                  = "${var.name_prefix}-${each.key}"
  resource_group_name   = azurerm_resource_group.this.name
  private_dns_zone_name = azurerm_private_dns_zone.this[each.key].name
  virtual_network_id    = azurerm_virtual_network.this.id
  registration_enabled  = false
  tags                  = local.tags
}

resource "azurerm_private_endpoint" "this" {
  for_each = local.private_endpoints

  name                = "${each.key}-pe"
  location            = var.location
  resource_group_name = azurerm_resource_group.this.name
  subnet_id           = azurerm_subnet.this["data"].id
  tags                = local.tags

  private_service_connection {
    name                           = "${each.key}-psc"
    private_connection_resource_id = each.value.id
    subresource_names              = [local.private_link_services[each.value.service].subresource]
    is_manual_connection           = false
  }

  private_dns_zone_group {
    name                 = each.value.service
    private_dns_zone_ids = [azurerm_private_dns_zone.this[each.value.service].id]
  }
}
