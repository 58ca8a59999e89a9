# One virtual network with a subnet per tier. Each subnet has its own network security group; the
# VM's group opens MySQL (3306) and its exporters only to the AKS subnet and denies the rest of the
# virtual network explicitly, because Azure's default rule AllowVnetInBound would otherwise let
# every subnet in.

locals {
  subnets = {
    # /20: Azure CNI gives every pod an address (15 nodes x 110 pods + surge fits in 4096).
    aks = cidrsubnet(var.address_space, 4, 0)
    # /24 each for private endpoints and the Application Gateway (v2 wants a dedicated /24).
    data  = cidrsubnet(var.address_space, 8, 16)
    appgw = cidrsubnet(var.address_space, 8, 17)
    # /27 for the MySQL VM.
    vm = cidrsubnet(var.address_space, 11, 144)
  }

  private_dns_zones = {
    redis      = "privatelink.redis.cache.windows.net"
    postgres   = "privatelink.postgres.database.azure.com"
    servicebus = "privatelink.servicebus.windows.net"
    keyvault   = "privatelink.vaultcore.azure.net"
    acr        = "privatelink.azurecr.io"
    blob       = "privatelink.blob.core.windows.net"
  }
}

resource "azurerm_virtual_network" "this" {
  name                = "${var.name_prefix}-vnet"
  location            = var.location
  resource_group_name = var.resource_group_name
  address_space       = [var.address_space]
  tags                = var.tags
}

resource "azurerm_subnet" "aks" {
  name                 = "aks"
  resource_group_name  = var.resource_group_name
  virtual_network_name = azurerm_virtual_network.this.name
  address_prefixes     = [local.subnets.aks]
}

resource "azurerm_subnet" "data" {
  name                 = "data"
  resource_group_name  = var.resource_group_name
  virtual_network_name = azurerm_virtual_network.this.name
  address_prefixes     = [local.subnets.data]
  # Network security groups apply to the private endpoints in this subnet.
  private_endpoint_network_policies = "Enabled"
}

resource "azurerm_subnet" "appgw" {
  name                 = "appgw"
  resource_group_name  = var.resource_group_name
  virtual_network_name = azurerm_virtual_network.this.name
  address_prefixes     = [local.subnets.appgw]
}

resource "azurerm_subnet" "vm" {
  name                 = "vm"
  resource_group_name  = var.resource_group_name
  virtual_network_name = azurerm_virtual_network.this.name
  address_prefixes     = [local.subnets.vm]
  # Outbound goes through the NAT gateway below, never through an implicit address.
  default_outbound_access_enabled = false
}

# --- AKS subnet: AKS adds its own rules on the node resource group's NSG; this one only
# documents intent and keeps the subnet compliant (every subnet has a group).
resource "azurerm_network_security_group" "aks" {
  name                = "${var.name_prefix}-aks-nsg"
  location            = var.location
  resource_group_name = var.resource_group_name
  tags                = var.tags
}

resource "azurerm_subnet_network_security_group_association" "aks" {
  subnet_id                 = azurerm_subnet.aks.id
  network_security_group_id = azurerm_network_security_group.aks.id
}

# --- Data subnet: private endpoints of Redis, PostgreSQL, Service Bus, Key Vault, ACR, Blob,
# reached only from the cluster, the VM and the Application Gateway (Key Vault certificate).
resource "azurerm_network_security_group" "data" {
  name                = "${var.name_prefix}-data-nsg"
  location            = var.location
  resource_group_name = var.resource_group_name
  tags                = var.tags

  security_rule {
    name                       = "allow-private-endpoints-from-workloads"
    priority                   = 100
    direction                  = "Inbound"
    access                     = "Allow"
    protocol                   = "Tcp"
    source_address_prefixes    = [local.subnets.aks, local.subnets.vm, local.subnets.appgw]
    source_port_range          = "*"
    destination_address_prefix = local.subnets.data
    # 443 Key Vault / ACR / Blob / Service Bus HTTPS, 5671-5672 AMQP, 6380 Redis TLS,
    # 10000-10002 Redis clustered, 5432 PostgreSQL.
    destination_port_ranges = ["443", "5432", "5671-5672", "6380", "10000-10002"]
  }

  security_rule {
    name                       = "deny-other-vnet-inbound"
    priority                   = 4000
    direction                  = "Inbound"
    access                     = "Deny"
    protocol                   = "*"
    source_address_prefix      = "VirtualNetwork"
    source_port_range          = "*"
    destination_address_prefix = "*"
    destination_port_range     = "*"
  }
}

resource "azurerm_subnet_network_security_group_association" "data" {
  subnet_id                 = azurerm_subnet.data.id
  network_security_group_id = azurerm_network_security_group.data.id
}

# --- Application Gateway subnet: HTTPS (443 only, no plain HTTP) from the internet, and the ports Azure's gateway manager
# needs for v2 SKUs (65200-65535, from the GatewayManager service tag only).
resource "azurerm_network_security_group" "appgw" {
  name                = "${var.name_prefix}-appgw-nsg"
  location            = var.location
  resource_group_name = var.resource_group_name
  tags                = var.tags

  security_rule {
    name                       = "allow-https-from-internet"
    priority                   = 100
    direction                  = "Inbound"
    access                     = "Allow"
    protocol                   = "Tcp"
    source_address_prefix      = "Internet"
    source_port_range          = "*"
    destination_address_prefix = "*"
    destination_port_range     = "443"
  }

  security_rule {
    name                       = "allow-gateway-manager"
    priority                   = 110
    direction                  = "Inbound"
    access                     = "Allow"
    protocol                   = "Tcp"
    source_address_prefix      = "GatewayManager"
    source_port_range          = "*"
    destination_address_prefix = "*"
    destination_port_range     = "65200-65535"
  }

  security_rule {
    name                       = "allow-azure-load-balancer"
    priority                   = 120
    direction                  = "Inbound"
    access                     = "Allow"
    protocol                   = "*"
    source_address_prefix      = "AzureLoadBalancer"
    source_port_range          = "*"
    destination_address_prefix = "*"
    destination_port_range     = "*"
  }
}

resource "azurerm_subnet_network_security_group_association" "appgw" {
  subnet_id                 = azurerm_subnet.appgw.id
  network_security_group_id = azurerm_network_security_group.appgw.id
}

# --- VM subnet: MySQL and the exporters from the AKS subnet only; SSH from the admin CIDR or not
# at all; everything else from the virtual network denied.
resource "azurerm_network_security_group" "vm" {
  name                = "${var.name_prefix}-vm-nsg"
  location            = var.location
  resource_group_name = var.resource_group_name
  tags                = var.tags

  security_rule {
    name                       = "allow-mysql-from-aks"
    priority                   = 100
    direction                  = "Inbound"
    access                     = "Allow"
    protocol                   = "Tcp"
    source_address_prefix      = local.subnets.aks
    source_port_range          = "*"
    destination_address_prefix = local.subnets.vm
    destination_port_range     = "3306"
  }

  security_rule {
    name                       = "allow-exporters-from-aks"
    priority                   = 110
    direction                  = "Inbound"
    access                     = "Allow"
    protocol                   = "Tcp"
    source_address_prefix      = local.subnets.aks
    source_port_range          = "*"
    destination_address_prefix = local.subnets.vm
    # node_exporter, mysqld_exporter
    destination_port_ranges = ["9100", "9104"]
  }

  dynamic "security_rule" {
    for_each = var.admin_ssh_cidr == "" ? [] : [var.admin_ssh_cidr]
    content {
      name                       = "allow-ssh-from-admin"
      priority                   = 200
      direction                  = "Inbound"
      access                     = "Allow"
      protocol                   = "Tcp"
      source_address_prefix      = security_rule.value
      source_port_range          = "*"
      destination_address_prefix = local.subnets.vm
      destination_port_range     = "22"
    }
  }

  security_rule {
    name                       = "deny-all-other-inbound"
    priority                   = 4000
    direction                  = "Inbound"
    access                     = "Deny"
    protocol                   = "*"
    source_address_prefix      = "*"
    source_port_range          = "*"
    destination_address_prefix = "*"
    destination_port_range     = "*"
  }
}

resource "azurerm_subnet_network_security_group_association" "vm" {
  subnet_id                 = azurerm_subnet.vm.id
  network_security_group_id = azurerm_network_security_group.vm.id
}

# --- Outbound for the VM (packages, Key Vault over its private endpoint needs none): new subnets
# get no default outbound access, so the VM subnet leaves through a NAT gateway.
resource "azurerm_public_ip" "nat" {
  name                = "${var.name_prefix}-nat-pip"
  location            = var.location
  resource_group_name = var.resource_group_name
  allocation_method   = "Static"
  sku                 = "Standard"
  zones               = ["1", "2", "3"]
  tags                = var.tags
}

resource "azurerm_nat_gateway" "vm" {
  name                    = "${var.name_prefix}-nat"
  location                = var.location
  resource_group_name     = var.resource_group_name
  sku_name                = "Standard"
  idle_timeout_in_minutes = 10
  tags                    = var.tags
}

resource "azurerm_nat_gateway_public_ip_association" "vm" {
  nat_gateway_id       = azurerm_nat_gateway.vm.id
  public_ip_address_id = azurerm_public_ip.nat.id
}

resource "azurerm_subnet_nat_gateway_association" "vm" {
  subnet_id      = azurerm_subnet.vm.id
  nat_gateway_id = azurerm_nat_gateway.vm.id
}

# --- Private DNS: one zone per private-link service, linked to the virtual network so the
# services' public names resolve to their private endpoints from inside it.
resource "azurerm_private_dns_zone" "this" {
  for_each = local.private_dns_zones

  name                = each.value
  resource_group_name = var.resource_group_name
  tags                = var.tags
}

resource "azurerm_private_dns_zone_virtual_network_link" "this" {
  for_each = local.private_dns_zones

  name                  = "${var.name_prefix}-${each.key}"
  resource_group_name   = var.resource_group_name
  private_dns_zone_name = azurerm_private_dns_zone.this[each.key].name
  virtual_network_id    = azurerm_virtual_network.this.id
  registration_enabled  = false
  tags                  = var.tags
}
