# Azure Service Bus: the bus of the cloud deployment (BUS_KIND=servicebus). Three topics as in the
# design (events.ingested -> fairness -> events.accepted -> progression, leaderboard; flagged
# events quarantined in events.flagged), duplicate detection over 10 minutes (a gateway retry of
# the same eventId is dropped), sessions keyed by player so each player's events arrive in order,
# 10 deliveries before a message is dead-lettered.
#
# Authentication, decided: SAS stays on (local_auth_enabled = true by default) because LiveOps
# reads one AMQP connection string from BUS_CONN, like every other backend URL, and the Rust
# AMQP client authenticates with SAS. The rule has Send and Listen only (no Manage), its
# connection string lives only in Key Vault (bus-conn), and in prod the namespace is reachable
# only through its private endpoint. The workload identity also holds the Data Sender and Data
# Receiver roles, so switching to Entra ID is local_auth_enabled = false plus a token-based
# BUS_CONN in the application, with no other infrastructure change.

locals {
  premium          = var.sku == "Premium"
  private_endpoint = local.premium && var.private_endpoint_subnet_id != ""
  # Partitioning: Standard topics can be partitioned; Premium ones only in a partitioned namespace.
  partitioned = local.premium ? var.premium_messaging_partitions > 1 : true

  topics = ["events.ingested", "events.accepted", "events.flagged"]

  # One subscription per consumer group.
  subscriptions = {
    fairness    = "events.ingested"
    progression = "events.accepted"
    leaderboard = "events.accepted"
  }
}

resource "azurerm_servicebus_namespace" "this" {
  #checkov:skip=CKV_AZURE_201:Customer-managed keys are not required by the design; messages are encrypted at rest with platform keys.
  #checkov:skip=CKV_AZURE_199:Double (infrastructure) encryption needs customer-managed keys, which the design does not require; messages are encrypted at rest with platform keys.
  #checkov:skip=CKV_AZURE_204:Public access is off whenever a private endpoint is configured (prod, Premium); dev's Standard namespace cannot have private endpoints.
  name                          = "${var.name_prefix}-sb"
  location                      = var.location
  resource_group_name           = var.resource_group_name
  sku                           = var.sku
  capacity                      = local.premium ? var.capacity : 0
  premium_messaging_partitions  = local.premium ? var.premium_messaging_partitions : 0
  local_auth_enabled            = var.local_auth_enabled
  public_network_access_enabled = !local.private_endpoint
  minimum_tls_version           = "1.2"
  tags                          = var.tags

  identity {
    type = "SystemAssigned"
  }

  dynamic "network_rule_set" {
    for_each = local.premium ? [1] : []
    content {
      default_action                = "Deny"
      public_network_access_enabled = !local.private_endpoint
      trusted_services_allowed      = true
    }
  }
}

resource "azurerm_servicebus_topic" "this" {
  for_each = toset(local.topics)

  name                                    = each.value
  namespace_id                            = azurerm_servicebus_namespace.this.id
  requires_duplicate_detection            = true
  duplicate_detection_history_time_window = "PT10M"
  partitioning_enabled                    = local.partitioned
  default_message_ttl                     = var.message_ttl
  max_size_in_megabytes                   = local.premium ? 81920 : 5120
  batched_operations_enabled              = true
}

resource "azurerm_servicebus_subscription" "this" {
  for_each = local.subscriptions

  name                                 = each.key
  topic_id                             = azurerm_servicebus_topic.this[each.value].id
  max_delivery_count                   = 10
  dead_lettering_on_message_expiration = true
  requires_session                     = true
  lock_duration                        = "PT30S"
  default_message_ttl                  = var.message_ttl
  batched_operations_enabled           = true
}

# The application's key: send and listen, no manage.
resource "azurerm_servicebus_namespace_authorization_rule" "liveops" {
  name         = "liveops-app"
  namespace_id = azurerm_servicebus_namespace.this.id
  listen       = true
  send         = true
  manage       = false
}

resource "azurerm_role_assignment" "workload_sender" {
  scope                = azurerm_servicebus_namespace.this.id
  role_definition_name = "Azure Service Bus Data Sender"
  principal_id         = var.workload_principal_id
  principal_type       = "ServicePrincipal"
}

resource "azurerm_role_assignment" "workload_receiver" {
  scope                = azurerm_servicebus_namespace.this.id
  role_definition_name = "Azure Service Bus Data Receiver"
  principal_id         = var.workload_principal_id
  principal_type       = "ServicePrincipal"
}

resource "azurerm_private_endpoint" "this" {
  count = local.private_endpoint ? 1 : 0

  name                = "${var.name_prefix}-sb-pe"
  location            = var.location
  resource_group_name = var.resource_group_name
  subnet_id           = var.private_endpoint_subnet_id
  tags                = var.tags

  private_service_connection {
    name                           = "${var.name_prefix}-sb-psc"
    private_connection_resource_id = azurerm_servicebus_namespace.this.id
    subresource_names              = ["namespace"]
    is_manual_connection           = false
  }

  private_dns_zone_group {
    name                 = "servicebus"
    private_dns_zone_ids = [var.private_dns_zone_id]
  }
}
