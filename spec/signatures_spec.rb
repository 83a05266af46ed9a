# frozen_string_literal: true

require 'pathname'
require 'divvy'
require 'divvy/cli'

# sig/divvy.rbs against the loaded code: every public method and constant
# divvy defines (in Ruby or in the extension) must have a signature. The
# reverse is not checked: a signature may come before its method.
RSpec.describe 'sig/divvy.rbs' do
  # Loaded here, after the specs that run divvy in this process: Ruby 3.1's
  # rbs (2.1) keeps references to its classes that GC.compact may move, and
  # divvy compacts a large heap before it forks.
  before(:all) { require 'rbs' }

  # Every class and module under Divvy, found by walking its constants.
  def divvy_namespaces(namespace = Divvy, found = [])
    found << namespace
    namespace.constants.sort.each do |name|
      value = namespace.const_get(name, false)
      next unless value.is_a?(Module) && value.name == "#{namespace.name}::#{name}" && !found.include?(value)

      divvy_namespaces(value, found)
    end
    found
  end

  def type_name(namespace)
    RBS::Namespace.parse("::#{namespace.name}").to_type_name
  end

  # The methods whose signature the RBS file itself declares for the
  # instances (`kind` :instance) or the singleton (:singleton) of
  # `namespace` (inherited ones from Object and friends do not count).
  def declared_methods(namespace, kind)
    name = type_name(namespace)
    return [] unless env.class_decls.key?(name)

    definition = kind == :instance ? builder.build_instance(name) : builder.build_singleton(name)
    definition.methods.select { |_, method| method.defined_in == name }.keys
  end

  let(:env) do
    loader = RBS::EnvironmentLoader.new
    loader.add(path: Pathname(ROOT).join('sig'))
    RBS::Environment.from_loader(loader).resolve_type_names
  end
  let(:builder) { RBS::DefinitionBuilder.new(env: env) }
  let(:namespaces) { divvy_namespaces }

  it 'covers the classes and modules the README documents' do
    expected = %w[Divvy Divvy::Parallelizable Divvy::Master Divvy::Master::BootFailure Divvy::Master::Shutdown
                  Divvy::Worker Divvy::Error Divvy::TaskError Divvy::CLI]
    expect(namespaces.map(&:name)).to include(*expected)
  end

  it 'declares every class and module under Divvy' do
    missing = namespaces.reject { |namespace| env.class_decls.key?(type_name(namespace)) }
    expect(missing.map(&:name)).to be_empty
  end

  it 'declares every public constant under Divvy' do
    missing = namespaces.flat_map do |namespace|
      namespace.constants.sort.filter_map do |name|
        next if namespace.const_get(name, false).is_a?(Module)

        constant = RBS::TypeName.new(namespace: type_name(namespace).to_namespace, name: name)
        "#{namespace}::#{name}" unless env.constant_decls.key?(constant)
      end
    end
    expect(missing).to be_empty
  end

  it 'has a signature for every public instance method' do
    missing = namespaces.flat_map do |namespace|
      declared = declared_methods(namespace, :instance)
      (namespace.public_instance_methods(false) - declared).map { |name| "#{namespace}##{name}" }
    end
    expect(missing.sort).to be_empty
  end

  it 'has a signature for every public singleton method' do
    missing = namespaces.flat_map do |namespace|
      declared = declared_methods(namespace, :singleton)
      (namespace.singleton_class.public_instance_methods(false) - declared).map { |name| "#{namespace}.#{name}" }
    end
    expect(missing.sort).to be_empty
  end
end
